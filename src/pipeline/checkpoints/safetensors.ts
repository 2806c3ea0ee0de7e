// safetensors files (Hugging Face's tensor container): an 8-byte little-endian header length, a
// JSON header {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to the end of
// the header), then the raw little-endian tensor bytes. We parse the header only and read each
// requested tensor with a positioned read, so a depth-1 build from a many-GB checkpoint touches
// only the bytes of the tensors it uses. Sharded checkpoints (`model.safetensors.index.json`,
// {weight_map: {name: file}}) are one logical store over several files.
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync, fstatSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL';

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I8: 1, U8: 1, BOOL: 1 };

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
  file: string;
}

/** A float tensor converted to fp32, row-major. */
export interface FloatTensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

/** Parse one file's header: its tensors with absolute file offsets (reads only the header bytes). */
export function readSafetensorsHeader(file: string): { tensors: Map<string, TensorEntry>; metadata: Record<string, string> } {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const lenBuf = Buffer.alloc(8);
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${file}: not a safetensors file (shorter than 8 bytes)`);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || headerLen > 100_000_000 || 8 + headerLen > size) throw new Error(`${file}: not a safetensors file (header length ${headerLen})`);
    const hb = Buffer.alloc(headerLen);
    readSync(fd, hb, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(hb.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${file}: safetensors header is not JSON (${(e as Error).message})`);
    }
    const base = 8 + headerLen;
    const tensors = new Map<string, TensorEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (v ?? {}) as Record<string, string>;
        continue;
      }
      const e = v as { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number] };
      const [b, en] = e.data_offsets;
      const count = e.shape.reduce((a, c) => a * c, 1);
      const width = BYTES[e.dtype];
      if (width === undefined) throw new Error(`${file}: tensor ${name} has unsupported dtype ${e.dtype}`);
      if (en - b !== count * width || base + en > size)
        throw new Error(`${file}: tensor ${name} has inconsistent offsets [${b}, ${en}] for ${e.dtype} [${e.shape}]`);
      tensors.set(name, { name, dtype: e.dtype, shape: e.shape, begin: base + b, end: base + en, file });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/** fp16 bits -> float. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

// One scratch word for the bit conversions below: a fresh typed array per value made writing a
// multi-GB fp16/bf16 random checkpoint take half an hour.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float -> fp16 bits (round to nearest even). Used by tests and random checkpoints. */
export function floatToHalf(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** float -> bf16 bits (round to nearest even). */
export function floatToBf16(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

function toFloat32(e: TensorEntry, bytes: Buffer): Float32Array {
  const n = e.shape.reduce((a, c) => a * c, 1);
  const out = e.dtype === 'F32' ? new Float32Array(0) : new Float32Array(n);
  switch (e.dtype) {
    case 'F32':
      if (bytes.byteOffset === 0 && bytes.buffer.byteLength === n * 4) return new Float32Array(bytes.buffer, 0, n);
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
      return out;
    case 'F16': {
      // Table lookup: 65,536 entries computed once.
      const table = halfTable();
      for (let i = 0; i < n; i++) out[i] = table[bytes.readUInt16LE(i * 2)]!;
      return out;
    }
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = bytes.readUInt16LE(i * 2) << 16;
      return out;
    }
    default:
      throw new Error(`tensor ${e.name}: dtype ${e.dtype} is not a float type`);
  }
}

let halfLookup: Float32Array | undefined;
function halfTable(): Float32Array {
  if (!halfLookup) {
    halfLookup = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfLookup[i] = halfToFloat(i);
  }
  return halfLookup;
}

/**
 * A safetensors checkpoint (one file or a sharded index) opened for positioned reads. Only
 * headers are parsed on open; `read(name)` reads that tensor's bytes and converts them to fp32.
 */
export class SafetensorsStore {
  private readonly fds = new Map<string, number>();
  /** Bytes read from tensor data so far (for memory/IO accounting in tests). */
  bytesRead = 0;

  private constructor(
    readonly tensors: Map<string, TensorEntry>,
    readonly files: string[],
  ) {}

  /** Open `model.safetensors`, a `*.safetensors.index.json`, or a directory holding either. */
  static open(path: string): SafetensorsStore {
    let p = path;
    if (existsSync(join(path, 'model.safetensors.index.json'))) p = join(path, 'model.safetensors.index.json');
    else if (existsSync(join(path, 'model.safetensors'))) p = join(path, 'model.safetensors');
    if (p.endsWith('.index.json')) {
      const index = JSON.parse(readFileSync(p, 'utf8')) as { weight_map?: Record<string, string> };
      if (!index.weight_map) throw new Error(`${p}: no weight_map`);
      const files = [...new Set(Object.values(index.weight_map))].map((f) => join(dirname(p), f));
      const tensors = new Map<string, TensorEntry>();
      for (const f of files) {
        for (const [name, e] of readSafetensorsHeader(f).tensors) tensors.set(name, e);
      }
      for (const name of Object.keys(index.weight_map)) {
        if (!tensors.has(name)) throw new Error(`${p}: ${name} is listed in the index but absent from ${index.weight_map[name]}`);
      }
      return new SafetensorsStore(tensors, files);
    }
    if (!existsSync(p) || !p.endsWith('.safetensors')) throw new Error(`${path}: no model.safetensors or model.safetensors.index.json`);
    return new SafetensorsStore(readSafetensorsHeader(p).tensors, [p]);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.tensors.get(name);
    if (!e) throw new Error(`checkpoint has no tensor ${name}`);
    return e;
  }

  private fd(file: string): number {
    let fd = this.fds.get(file);
    if (fd === undefined) this.fds.set(file, (fd = openSync(file, 'r')));
    return fd;
  }

  /** Read rows [rowBegin, rowEnd) of a tensor's first axis (e.g. a few LM-head rows). */
  readRows(name: string, rowBegin: number, rowEnd: number): FloatTensor {
    const e = this.entry(name);
    const rows = e.shape[0] ?? 1;
    if (rowBegin < 0 || rowEnd > rows || rowBegin > rowEnd) throw new Error(`tensor ${name}: rows [${rowBegin}, ${rowEnd}) out of range (${rows} rows)`);
    const rowBytes = (e.end - e.begin) / Math.max(1, rows);
    const sub: TensorEntry = { ...e, shape: [rowEnd - rowBegin, ...e.shape.slice(1)], begin: e.begin + rowBegin * rowBytes, end: e.begin + rowEnd * rowBytes };
    return { name, dims: sub.shape, data: this.readEntry(sub) };
  }

  read(name: string): FloatTensor {
    const e = this.entry(name);
    return { name, dims: [...e.shape], data: this.readEntry(e) };
  }

  private readEntry(e: TensorEntry): Float32Array {
    const len = e.end - e.begin;
    // A fresh, exactly sized buffer: fp32 data is then viewed in place, without a copy.
    const buf = Buffer.from(new ArrayBuffer(len));
    const fd = this.fd(e.file);
    let done = 0;
    // readSync reads at most 2 GB per call.
    while (done < len) {
      const n = readSync(fd, buf, done, Math.min(len - done, 1 << 30), e.begin + done);
      if (n <= 0) throw new Error(`${e.file}: unexpected end of file reading ${e.name}`);
      done += n;
    }
    this.bytesRead += len;
    return toFloat32(e, buf);
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

/** A tensor to write: fp32 values, stored as `dtype`. */
export interface TensorToWrite {
  name: string;
  dims: number[];
  data: Float32Array;
  dtype?: 'F32' | 'F16' | 'BF16';
}

/**
 * Write a safetensors file, streaming tensor by tensor (tests and random checkpoints write GBs).
 * `tensors` may be a generator, but header needs all shapes first: pass shapes via `plan`.
 */
export function writeSafetensors(
  file: string,
  plan: { name: string; dims: number[]; dtype?: 'F32' | 'F16' | 'BF16' }[],
  produce: (name: string) => Float32Array,
  metadata: Record<string, string> = { format: 'pt' },
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of plan) {
    const dtype = t.dtype ?? 'F32';
    const n = t.dims.reduce((a, c) => a * c, 1) * BYTES[dtype]!;
    header[t.name] = { dtype, shape: t.dims, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const fd = openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json, 'utf8'));
    for (const t of plan) {
      const dtype = t.dtype ?? 'F32';
      const data = produce(t.name);
      const count = t.dims.reduce((a, c) => a * c, 1);
      if (data.length !== count) throw new Error(`writeSafetensors: ${t.name} has ${data.length} values for [${t.dims}]`);
      let bytes: Buffer;
      if (dtype === 'F32') bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      else {
        const half = new Uint16Array(count);
        const conv = dtype === 'F16' ? floatToHalf : floatToBf16;
        for (let i = 0; i < count; i++) half[i] = conv(data[i]!);
        bytes = Buffer.from(half.buffer, half.byteOffset, half.byteLength);
      }
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
    }
  } finally {
    closeSync(fd);
  }
}
