// Replace a file so that a reader sees the old content or the new, never a half-written one:
// write a hidden temporary sibling, fsync it, rename it over the target (atomic on one file
// system). Used for files other processes poll (routing.json, the build report).
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  // Hidden (leading dot) so a directory scan never takes it for a real file.
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFileSynced(temp, data);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Create `path` (it must not exist) with `data` and fsync it: durable, but not atomic by itself. */
export async function writeFileSynced(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
