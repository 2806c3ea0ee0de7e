// The Open Inference Protocol's binary tensor data extension (as tritonclient speaks it): a body
// is a JSON header of `Inference-Header-Content-Length` bytes followed by raw tensor bytes, in the
// order of the tensors whose parameters carry `binary_data_size`. BYTES elements are a 4-byte
// little-endian length and the bytes; FP32 is little-endian float32, row-major.
import { CoreError } from '../errors.js';

export const HEADER_LENGTH = 'inference-header-content-length';
/** The content type the v2 routes' hook gives a binary body so that its own parser reads it. */
export const BINARY_CONTENT_TYPE = 'application/vnd.slimserve.v2-binary';

const bad = (message: string): CoreError => new CoreError('INVALID_REQUEST', message);

/** Decode BYTES elements: 4-byte little-endian length, then that many bytes (UTF-8 text). */
export function decodeBytesTensor(buf: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 4 > buf.length) throw bad('binary BYTES tensor: truncated element length');
    const n = buf.readUInt32LE(at);
    at += 4;
    if (at + n > buf.length) throw bad('binary BYTES tensor: element longer than the data');
    out.push(buf.subarray(at, at + n).toString('utf8'));
    at += n;
  }
  return out;
}

export function encodeBytesTensor(items: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of items) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length, 0);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

export function encodeFp32Tensor(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

interface BinaryInput {
  name?: unknown;
  datatype?: unknown;
  data?: unknown;
  parameters?: Record<string, unknown>;
}

/** A binary request body -> the JSON request with every binary input's `data` filled in. */
export function decodeBinaryRequest(body: Buffer, headerLengthText: string | undefined): unknown {
  const headerLength = Number(headerLengthText);
  if (!Number.isInteger(headerLength) || headerLength < 0 || headerLength > body.length) {
    throw bad(`${HEADER_LENGTH} must be an integer between 0 and the body length (${body.length}), got ${JSON.stringify(headerLengthText)}`);
  }
  let header: { inputs?: BinaryInput[] };
  try {
    header = JSON.parse(body.subarray(0, headerLength).toString('utf8')) as { inputs?: BinaryInput[] };
  } catch {
    throw new CoreError('INVALID_JSON', `the first ${headerLength} bytes (${HEADER_LENGTH}) are not valid JSON`);
  }
  if (header === null || typeof header !== 'object' || !Array.isArray(header.inputs)) return header;
  let at = headerLength;
  for (const input of header.inputs) {
    const size = input?.parameters?.binary_data_size;
    if (size === undefined) continue;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || at + size > body.length) {
      throw bad(`input ${JSON.stringify(input.name)}: binary_data_size ${JSON.stringify(size)} does not fit the ${body.length - at} bytes left`);
    }
    if (input.datatype !== 'BYTES')
      throw bad(`input ${JSON.stringify(input.name)}: binary data is read for BYTES inputs only, got ${JSON.stringify(input.datatype)}`);
    input.data = decodeBytesTensor(body.subarray(at, at + size));
    const { binary_data_size: _dropped, ...rest } = input.parameters!;
    input.parameters = rest;
    at += size;
  }
  if (at !== body.length) throw bad(`${body.length - at} bytes after the last binary input`);
  return header;
}

interface JsonOutput {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
  parameters?: Record<string, unknown>;
}

/**
 * The answer with the named outputs moved to binary: their `data` becomes bytes after the JSON
 * header and `parameters.binary_data_size` says how many. Returns the body and the header length.
 */
export function encodeBinaryResponse(
  answer: { outputs: JsonOutput[] } & Record<string, unknown>,
  binary: ReadonlySet<string>,
): { body: Buffer; headerLength: number } {
  const blobs: Buffer[] = [];
  const outputs = answer.outputs.map((o) => {
    if (!binary.has(o.name)) return o;
    const blob = o.datatype === 'BYTES' ? encodeBytesTensor(o.data as string[]) : encodeFp32Tensor(o.data as number[]);
    blobs.push(blob);
    const { data: _moved, ...rest } = o;
    return { ...rest, parameters: { ...(o.parameters ?? {}), binary_data_size: blob.length } };
  });
  const header = Buffer.from(JSON.stringify({ ...answer, outputs }), 'utf8');
  return { body: Buffer.concat([header, ...blobs]), headerLength: header.length };
}

/**
 * Which outputs the request wants in binary: an output's `binary_data` parameter, else the
 * request's `binary_data_output` (tritonclient sends the latter when it names no outputs).
 */
export function binaryOutputs(
  body: { parameters?: Record<string, unknown>; outputs?: { name: string; parameters?: Record<string, unknown> }[] },
  all: readonly string[],
): Set<string> {
  const wanted = new Set<string>();
  const everyOutput = body.parameters?.binary_data_output === true;
  if (body.outputs && body.outputs.length > 0) {
    for (const o of body.outputs) {
      const own = o.parameters?.binary_data;
      if (own === true || (own === undefined && everyOutput)) wanted.add(o.name);
    }
  } else if (everyOutput) {
    for (const n of all) wanted.add(n);
  }
  return wanted;
}
