import { ReferenceQuantModel } from '../../quant/reference.js';
import type { QuantLayer } from '../../quant/format.js';
import { ReferenceSparseModel } from '../../sparse/reference.js';
import type { Backend, BackendInfo, ModelConfig, QuantModelConfig, SparseLayer, SparseModelConfig } from '../types.js';
import { ReferenceModel } from './model.js';

export { ReferenceModel } from './model.js';

export const referenceBackend: Backend = {
  name: 'reference',
  info(): BackendInfo {
    return { name: 'reference', isa: 'js', threads: 1 };
  },
  createModel(config: ModelConfig, params: Float32Array) {
    return new ReferenceModel(config, params);
  },
  createQuantModel(config: QuantModelConfig, layers: QuantLayer[]) {
    return new ReferenceQuantModel(config, layers);
  },
  createSparseModel(config: SparseModelConfig, layers: SparseLayer[]) {
    return new ReferenceSparseModel(config, layers);
  },
  setThreads(): void {
    // The reference runs every call on the calling thread; nothing to size.
  },
};
