// Deterministic benchmark texts, so the shipped scripts need no dataset: short (~10 words),
// medium (~60) and long (~250, past the 128-token limit of USE-lite, so truncated).
import { mulberry32 } from '../src/pipeline/random.js';

const WORDS = (
  'the a to of and in is it you that was for on are with as i his they be at one have this from or had by ' +
  'free offer click now money win prize account meeting attached report please review update project ' +
  'server error list thanks regards team schedule call tomorrow price cheap deal limited time order ' +
  'credit loan viagra unsubscribe newsletter linux patch release kernel build python message'
).split(' ');

export type TextLength = 'short' | 'medium' | 'long';
const WORD_COUNT: Record<TextLength, number> = { short: 10, medium: 60, long: 250 };

export function generateTexts(length: TextLength, count: number, seed = 1): string[] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => {
    const n = Math.max(1, Math.round(WORD_COUNT[length] * (0.8 + 0.4 * rand())));
    return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]!).join(' ');
  });
}
