// What POST /feedback joins the true label with: the prediction a /classify answer made, found
// from its request_id.
//
// With a shared secret (feedbackSecret / SLIM_FEEDBACK_SECRET) the request_id itself carries
// the model, the variant and predicted label of every input and the time, signed with
// HMAC-SHA256: any replica can verify it without shared state, and a forged or altered id is
// refused (400). Without a secret the request_id is the plain request id and the prediction is
// kept in this replica's memory under a random id the server issues: a bounded map (oldest
// entries evicted past `capacity`) whose entries expire after `ttlMs`. Either way ids older than
// ttlMs are refused (404), and a small memory of which inputs already got feedback keeps a
// retried POST from counting twice on the replica that saw it.
//
// Integrity: a request_id is always issued by the server, never the client's x-request-id (that
// one only names the request in logs and headers), so a client cannot make its own /classify
// overwrite the prediction another client's id points to. A signed id has exactly one accepted
// spelling -- the MAC must be the canonical base64url encoding (lenient decoding would take
// another last character or appended padding for the same bytes) -- and "already answered" is
// keyed by that fixed-length MAC, so neither respellings nor long ids can count twice or grow
// memory.
import { createHmac, createSecretKey, randomUUID, timingSafeEqual, type KeyObject } from 'node:crypto';
import { CoreError } from '../errors.js';

/** One answered request, as feedback needs it. */
export interface ServedRecord {
  /** The request's own id (x-request-id), for logs. */
  trace: string;
  model: string;
  /** Per input: the variant that decided it. */
  variants: string[];
  /** Per input: the predicted label. */
  labels: string[];
  /** Epoch ms of the answer. */
  time: number;
}

export interface FeedbackOptions {
  secret: string | null;
  ttlMs: number;
  capacity: number;
  now?: () => number;
}

const PREFIX = 'v1';

interface Payload {
  r: string;
  m: string;
  v: string | string[];
  l: string[];
  t: number;
}

/** A map bounded in size and age: the oldest entry goes first, expired ones on the way. */
class BoundedTtlMap<V> {
  private readonly map = new Map<string, { value: V; at: number }>();

  constructor(
    private readonly capacity: number,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, { value, at: this.now() });
    this.evict();
  }

  get(key: string): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (this.now() - e.at > this.ttlMs) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }

  private evict(): void {
    const now = this.now();
    for (const [k, e] of this.map) {
      if (this.map.size > this.capacity || now - e.at > this.ttlMs) this.map.delete(k);
      else break; // insertion order = age order: the rest are younger
    }
  }
}

export interface ResolvedFeedbackId {
  record: ServedRecord;
  /** Key of the "already answered" memory for this id. */
  key: string;
  signed: boolean;
}

export class FeedbackIds {
  /** The feedbackSecret as a key object, imported once instead of on every HMAC (issue 17). */
  private readonly secret: KeyObject | null;
  private readonly now: () => number;
  /** Without a secret: request id -> record (the source of truth, this replica only). */
  private readonly records: BoundedTtlMap<ServedRecord>;
  /** Inputs that already got feedback, per id key (a cache against double counting). */
  private readonly answered: BoundedTtlMap<Set<number>>;

  constructor(readonly options: FeedbackOptions) {
    this.secret = options.secret ? createSecretKey(Buffer.from(options.secret, 'utf8')) : null;
    this.now = options.now ?? Date.now;
    this.records = new BoundedTtlMap(options.capacity, options.ttlMs, this.now);
    this.answered = new BoundedTtlMap(options.capacity, options.ttlMs, this.now);
  }

  get signed(): boolean {
    return this.secret !== null;
  }

  /** Records kept in memory (unsigned mode). */
  get stored(): number {
    return this.records.size;
  }

  /** The request_id to answer with: signed and self-describing, or the trace id (then stored). */
  issue(record: ServedRecord): string {
    if (!this.secret) {
      const id = randomUUID();
      this.records.set(id, record);
      return id;
    }
    const v = record.variants.every((x) => x === record.variants[0]) ? record.variants[0]! : record.variants;
    const payload: Payload = { r: record.trace, m: record.model, v, l: record.labels, t: Math.round(record.time) };
    const body = `${PREFIX}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    return `${body}.${this.mac(body).toString('base64url')}`;
  }

  /** The record behind a request_id; 400 when forged or malformed, 404 when unknown or expired. */
  resolve(id: string): ResolvedFeedbackId {
    if (!this.secret) {
      const record = this.records.get(id);
      if (!record)
        throw new CoreError(
          'REQUEST_ID_NOT_FOUND',
          `no answered request ${JSON.stringify(id.slice(0, 64))} within the last ${this.options.ttlMs} ms on this server`,
        );
      return { record, key: id, signed: false };
    }
    const parts = id.split('.');
    if (parts.length !== 3 || parts[0] !== PREFIX) throw new CoreError('INVALID_REQUEST_ID', 'request_id is not a signed id of this server');
    const body = `${parts[0]}.${parts[1]}`;
    // Compared as text, not decoded: only the canonical spelling of the MAC is accepted.
    const given = Buffer.from(parts[2]!, 'latin1');
    const want = Buffer.from(this.mac(body).toString('base64url'), 'latin1');
    // Lengths first: timingSafeEqual throws on unequal lengths, and a MAC's length is public.
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new CoreError('INVALID_REQUEST_ID', 'request_id signature does not match: forged, altered, or signed under another feedbackSecret');
    }
    let p: Payload;
    try {
      p = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Payload;
    } catch {
      throw new CoreError('INVALID_REQUEST_ID', 'request_id payload is not readable');
    }
    if (typeof p.m !== 'string' || !Array.isArray(p.l) || typeof p.t !== 'number' || typeof p.r !== 'string') {
      throw new CoreError('INVALID_REQUEST_ID', 'request_id payload is incomplete');
    }
    if (this.now() - p.t > this.options.ttlMs) {
      throw new CoreError('REQUEST_ID_NOT_FOUND', `request_id is older than ${this.options.ttlMs} ms (feedback.ttlMs)`);
    }
    const variants = Array.isArray(p.v) ? p.v : p.l.map(() => p.v as string);
    return { record: { trace: p.r, model: p.m, variants, labels: p.l, time: p.t }, key: parts[2]!, signed: true };
  }

  /** Mark an input of an id as answered; false when it already was (do not count again). */
  markAnswered(key: string, index: number): boolean {
    let set = this.answered.get(key);
    if (!set) {
      set = new Set();
      this.answered.set(key, set);
    }
    if (set.has(index)) return false;
    set.add(index);
    return true;
  }

  private mac(body: string): Buffer {
    return createHmac('sha256', this.secret!).update(body).digest();
  }
}
