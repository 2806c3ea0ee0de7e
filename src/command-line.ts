// How every `slim` subcommand meets the command line: its flags are one table (FlagSpec[]), and
// commander turns that table into the parser, `--help` / `-h` (usage, every flag with its
// default, an example) and the one-line errors (unknown flag, missing value, stray argument:
// exit code 2). `--help` prints and returns before the command's code runs.
import { Command, CommanderError, Option } from 'commander';

export interface FlagSpec {
  name: string;
  /** Placeholder of the value; absent for a switch. */
  value?: string;
  /** Shown as the default in --help (the command applies its defaults itself). */
  default?: string;
  help: string;
}

/** Flag name (without --) -> its string value, true for a switch, undefined when not given. */
export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

export interface CommandSpec {
  /** The subcommand: `slim <name>`. */
  name: string;
  /** One line, for `slim --help` and the top of `slim <name> --help`. */
  summary: string;
  flags: readonly FlagSpec[];
  /** Command lines shown under "Examples:". */
  examples: readonly string[];
  /** Further help text (e.g. the kinds of --base), printed after the flags. */
  notes?: string;
  /** Run with the parsed flags (and the argv they came from); returns the exit code. */
  run(values: FlagValues, argv: readonly string[]): Promise<number>;
}

function flagOption(f: FlagSpec): Option {
  const text = f.default === undefined ? f.help : `${f.help} (default: ${f.default})`;
  return new Option(f.value ? `--${f.name} <${f.value}>` : `--${f.name}`, text);
}

/** The commander command of a spec, with exit and output overridden so that nothing calls process.exit. */
export function commanderFor(
  spec: CommandSpec,
  out: (s: string) => void = (s) => process.stdout.write(s),
  err: (s: string) => void = (s) => process.stderr.write(s),
): { cmd: Command; values: () => FlagValues } {
  const cmd = new Command(`slim ${spec.name}`)
    .description(spec.summary)
    .helpOption('-h, --help', 'show this help and exit (the command does not run)')
    .allowExcessArguments(false)
    .exitOverride()
    .configureHelp({ sortOptions: false, helpWidth: 100 })
    .configureOutput({
      writeOut: out,
      writeErr: err,
      // One line: "slim build: unknown option '--bogus' (Did you mean --base?)".
      outputError: (text, write) =>
        write(
          `slim ${spec.name}: ${text
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()}\n`,
        ),
    });
  const options = spec.flags.map((f) => [f.name, flagOption(f)] as const);
  for (const [, o] of options) cmd.addOption(o);
  const after = [
    spec.notes ? `\n${spec.notes.trimEnd()}` : '',
    `\nExample${spec.examples.length > 1 ? 's' : ''}:`,
    ...spec.examples.map((e) => `  ${e}`),
  ].filter((s) => s !== '');
  cmd.addHelpText('after', after.join('\n'));
  const values = (): FlagValues =>
    Object.fromEntries(options.map(([name, o]) => [name, cmd.getOptionValue(o.attributeName()) as string | boolean | undefined]));
  return { cmd, values };
}

/** The help text of a subcommand, as `slim <name> --help` prints it. */
export function commandHelp(spec: CommandSpec): string {
  let text = '';
  const { cmd } = commanderFor(spec, (s) => void (text += s));
  cmd.outputHelp();
  return text;
}

/** Parse `argv` (the words after `slim <name>`) and run the command: its exit code; 0 after --help; 2 on a bad command line. */
export async function runCommand(spec: CommandSpec, argv: readonly string[]): Promise<number> {
  const { cmd, values } = commanderFor(spec);
  let code = 0;
  cmd.action(async () => {
    code = await spec.run(values(), argv);
  });
  try {
    await cmd.parseAsync([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return code;
}
