// Direct entry point of the server (containers, child-process tests):
//   node dist/src/serve/main.js [--models DIR] [--config FILE] [--port N] ...
// `slim serve` runs the same serveCommand.
import { serveCommand } from './command.js';

const code = await serveCommand(process.argv.slice(2));
// Exit explicitly: a worker thread or a keep-alive socket must not hold the process open.
process.exit(code);
