// A TCP port free on 127.0.0.1 right now, for a child process (a server under test, nginx,
// Prometheus) that must be told its port before it starts. Shared by the load tests and the
// integration tests (test/helpers/prometheus.ts re-exports it).
import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}
