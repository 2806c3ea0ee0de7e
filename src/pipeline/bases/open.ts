// The one switch over base kinds: the pipeline opens whatever --base named through here.
import type { BuildOptions } from '../build-options.js';
import type { BuildBase } from './base.js';
import { openUseLiteBase } from './use-lite.js';
import { openTransformerBase } from './transformer.js';

/** Open the base for a build with these labels (label-words heads need them to pick their words). */
export function openBase(o: BuildOptions, labels: readonly string[]): Promise<BuildBase> {
  return o.location.kind === 'use-lite' ? openUseLiteBase(o, labels) : openTransformerBase(o, labels);
}
