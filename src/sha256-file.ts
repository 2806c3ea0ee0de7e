// The sha256 (hex) of a file, streamed: model.onnx and its external data can be gigabytes. The
// build writes these hashes into a manifest and both the build and the server check them.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
