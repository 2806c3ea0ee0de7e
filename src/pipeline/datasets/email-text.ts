// The readable text of a raw e-mail (the SpamAssassin corpus's messages): the decoded Subject and
// the start of the body, MIME-decoded (quoted-printable, base64, charsets, multipart, RFC 2047
// encoded words), HTML reduced to its visible text.

/**
 * Characters of message text kept per example. The encoders see at most 128 tokens (about
 * 500-700 characters of English), so more would only cost memory and tokenizing time.
 */
export const SPAM_MAX_CHARS = 1000;

interface MimePart {
  headers: Map<string, string>;
  body: string;
}

/** The readable text of a raw email: decoded Subject, a newline, then the body's first SPAM_MAX_CHARS characters, whitespace collapsed. */
export function emailText(raw: string, maxChars = SPAM_MAX_CHARS): string {
  const message = parseMimePart(raw.replace(/\r\n/g, '\n'));
  const subject = collapseWhitespace(decodeEncodedWords(message.headers.get('subject') ?? ''));
  const body = collapseWhitespace(bodyText(message, 0));
  const text = subject === '' ? body : body === '' ? subject : `${subject}\n${body}`;
  if (text.length <= maxChars) return text;
  const cut = text.lastIndexOf(' ', maxChars);
  return text.slice(0, cut > maxChars / 2 ? cut : maxChars);
}

function parseMimePart(raw: string): MimePart {
  // A part with no headers starts with its blank line.
  const separator = raw.startsWith('\n') ? 0 : raw.indexOf('\n\n');
  const head = separator < 0 ? raw : raw.slice(0, separator);
  const body = separator < 0 ? '' : raw.slice(separator + (separator === 0 ? 1 : 2));
  const headers = new Map<string, string>();
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line); // the mbox "From " line has no colon after its name
    if (m && !headers.has(m[1]!.toLowerCase())) headers.set(m[1]!.toLowerCase(), m[2]!);
  }
  return { headers, body };
}

function headerParam(value: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Text of the first text/plain part, else of the first text/html part. */
function bodyText(part: MimePart, depth: number): string {
  const leaves: { html: boolean; text: string }[] = [];
  collectTextLeaves(part, depth, leaves);
  const plain = leaves.find((l) => !l.html && l.text.trim() !== '');
  if (plain) return plain.text;
  const html = leaves.find((l) => l.html);
  return html ? htmlToText(html.text) : '';
}

function collectTextLeaves(part: MimePart, depth: number, out: { html: boolean; text: string }[]): void {
  if (depth > 8) return; // malformed nesting: stop rather than recurse without end
  const contentType = part.headers.get('content-type') ?? 'text/plain';
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = headerParam(contentType, 'boundary');
    if (!boundary) {
      out.push({ html: false, text: part.body });
      return;
    }
    for (const sub of splitMultipart(part.body, boundary)) collectTextLeaves(parseMimePart(sub), depth + 1, out);
  } else if (type === 'message/rfc822') {
    collectTextLeaves(parseMimePart(part.body), depth + 1, out);
  } else if (type === 'text/plain' || type === 'text/html' || type === 'text' || type === '') {
    const text = decodeTransfer(part, contentType);
    out.push({ html: type === 'text/html' || looksLikeHtml(text), text });
  }
}

/** Much spam sends HTML labelled text/plain; treat it as the HTML it is. */
function looksLikeHtml(text: string): boolean {
  if (/<(html|body)\b/i.test(text)) return true;
  return (text.match(/<\/?(br|p|font|div|table|td|tr|img|a)\b[^>]*>/gi)?.length ?? 0) >= 5;
}

function splitMultipart(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of body.split('\n')) {
    if (line.startsWith(delimiter)) {
      if (current) parts.push(current.join('\n'));
      if (line.slice(delimiter.length).startsWith('--')) return parts;
      current = [];
    } else if (current) {
      current.push(line);
    }
  }
  if (current) parts.push(current.join('\n'));
  return parts;
}

function decodeTransfer(part: MimePart, contentType: string): string {
  const encoding = (part.headers.get('content-transfer-encoding') ?? '').trim().toLowerCase();
  const charset = headerParam(contentType, 'charset') ?? 'us-ascii';
  if (encoding === 'base64') {
    return decodeCharset(Buffer.from(part.body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64'), charset);
  }
  if (encoding === 'quoted-printable') {
    const latin1 = part.body.replace(/=[ \t]*\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    // Only a string of byte values can be re-read in its charset.
    // eslint-disable-next-line no-control-regex -- the range is every byte value, U+0000 included, on purpose
    return /[^\u0000-\u00ff]/.test(latin1) ? latin1 : decodeCharset(Buffer.from(latin1, 'latin1'), charset);
  }
  return part.body;
}

function decodeCharset(bytes: Uint8Array, charset: string): string {
  try {
    return new TextDecoder(charset.toLowerCase() === 'us-ascii' ? 'utf-8' : charset).decode(bytes);
  } catch {
    return Buffer.from(bytes).toString('latin1'); // an unknown charset label
  }
}

/** RFC 2047 encoded words (=?charset?B|Q?...?=) in a header value. */
function decodeEncodedWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2') // whitespace between adjacent encoded words is not text
    .replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (_, charset: string, kind: string, data: string) => {
      const bytes =
        kind.toLowerCase() === 'b'
          ? Buffer.from(data, 'base64')
          : Buffer.from(
              data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
              'latin1',
            );
      return decodeCharset(bytes, charset.split('*')[0]!);
    });
}

const INLINE_TAGS = 'a|b|i|u|em|strong|font|span|small|big|sup|sub|abbr|code|tt|s|strike';

const NAMED_ENTITIES: Record<string, string> = {
  nbsp: ' ',
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  copy: '©',
  reg: '®',
  trade: '™',
  hellip: '…',
  mdash: '—',
  ndash: '–',
  lsquo: '‘',
  rsquo: '’',
  ldquo: '“',
  rdquo: '”',
  bull: '•',
  middot: '·',
  euro: '€',
  pound: '£',
  cent: '¢',
  yen: '¥',
  deg: '°',
  times: '×',
};

/** Visible text of an HTML body: no comments, scripts, styles or head; inline tags vanish, block tags become spaces. */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(new RegExp(`</?(?:${INLINE_TAGS})\\b[^>]*>`, 'gi'), '')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#[0-9]+|#x[0-9a-f]+|[a-z]+);/gi, (entity, name: string) => {
      if (name.startsWith('#')) {
        const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : ' ';
      }
      return NAMED_ENTITIES[name.toLowerCase()] ?? entity;
    });
}

/** One space for any run of whitespace; ASCII rules (=====, -----) shortened, as they waste tokens. */
function collapseWhitespace(text: string): string {
  return text
    .replace(/([^\p{L}\p{N}\s])\1{3,}/gu, '$1$1$1')
    .replace(/\s+/g, ' ')
    .trim();
}
