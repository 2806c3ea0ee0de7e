// The example type every dataset reader produces, and the error they raise for a problem the
// user can fix (the message names the file, and the line and column where there is one).

export interface Example {
  text: string;
  label: string;
  /** 1-based line where the example starts in its file; absent for built-in corpora. */
  line?: number;
}

/** A problem with a dataset that the user can fix; the message names the file (and line). */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';

  constructor(
    readonly source: string,
    readonly detail: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    const where = line === undefined ? '' : column === undefined ? `:${line}` : `:${line}:${column}`;
    super(`${source}${where}: ${detail}`);
  }
}
