// HF `rope_scaling` (config.json) read into what a static RoPE table can honour at the configured
// length: linear and llama3 rescale the frequencies; dynamic (NTK) only changes the base once a
// sequence passes max_position_embeddings, which our tables never reach, so it is the default;
// longrope (phi3) uses its short factors up to original_max_position_embeddings. Anything else
// (yarn, ...) is refused by name rather than silently computed wrong.
import type { RopeScaling } from './transformer.js';

export function readRopeScaling(hf: Record<string, unknown>, family: string, opts: { longrope?: boolean } = {}): RopeScaling | undefined {
  const rs = hf.rope_scaling as Record<string, unknown> | null | undefined;
  if (!rs) return undefined;
  const type = String((rs.rope_type ?? rs.type ?? 'default') as string);
  const factor = typeof rs.factor === 'number' ? rs.factor : undefined;
  const need = (v: number | undefined, key: string): number => {
    if (typeof v !== 'number') throw new Error(`${family}: rope_scaling ${type} needs a numeric ${key}`);
    return v;
  };
  switch (type) {
    case 'default':
    case 'dynamic':
      return undefined;
    case 'linear':
      return { type: 'linear', factor: need(factor, 'factor') };
    case 'llama3':
      return {
        type: 'llama3',
        factor: need(factor, 'factor'),
        lowFreqFactor: need(rs.low_freq_factor as number, 'low_freq_factor'),
        highFreqFactor: need(rs.high_freq_factor as number, 'high_freq_factor'),
        originalMax: need(rs.original_max_position_embeddings as number, 'original_max_position_embeddings'),
      };
    case 'longrope':
    case 'su':
      if (opts.longrope) {
        const originalMax = need((rs.original_max_position_embeddings ?? hf.original_max_position_embeddings) as number, 'original_max_position_embeddings');
        const short = rs.short_factor;
        if (!Array.isArray(short) || !short.every((x) => typeof x === 'number')) throw new Error(`${family}: rope_scaling ${type} needs short_factor`);
        const scale = need(hf.max_position_embeddings as number, 'max_position_embeddings') / originalMax;
        const attentionFactor =
          typeof rs.attention_factor === 'number' ? rs.attention_factor : scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(originalMax));
        return { type: 'longrope', factors: short as number[], attentionFactor, originalMax };
      }
      break;
  }
  throw new Error(
    `${family}: rope_scaling type ${JSON.stringify(type)} is not supported (supported: linear, dynamic, llama3${opts.longrope ? ', longrope' : ''})`,
  );
}
