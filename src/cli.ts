// The `slim` command line: build | eval | serve | start.
export async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  switch (cmd) {
    default:
      console.error(`slim: unknown command ${cmd ?? ''}\nusage: slim build|eval|serve|start ...`);
      return 2;
  }
}
