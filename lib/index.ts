// The public surface of mlpkit, and nothing else.

export { Mlp } from './mlp.js';
export type { MlpOptions, LayerParameters, GradientRequest, Gradients, LoadOptions } from './mlp.js';
export type { MlpSpec, LayerSpec, EncodingSpec, InitName, NormalizedSpec } from './spec.js';
export type { ActivationName, LossName, OptimizerName } from './backend/types.js';
export { ACTIVATIONS, LOSSES, OPTIMIZERS } from './backend/types.js';
export { Trainer } from './train/trainer.js';
export type { TrainerOptions, FitOptions, FitProgress, FitResult, EpochRecord, Target } from './train/trainer.js';
export type { OptimizerOptions } from './train/optimizer-options.js';
export type { ScheduleOptions } from './train/schedule.js';
export type { LossOption } from './train/loss-options.js';
export { info, setThreads } from './info.js';
export type { Info } from './info.js';
export { readSafetensors, writeSafetensors } from './io/safetensors.js';
export type { Tensor, TensorInput, SafetensorsFile, Dtype } from './io/safetensors.js';
export type { ForeignModelOptions } from './io/model-file.js';
export { FileFormatError, ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE, ERR_DISPOSED, ERR_INVALID_FILE, ERR_NATIVE_UNAVAILABLE } from './errors.js';
export type { BackendChoice } from './backend/index.js';
export { QuantizedMlp } from './quant/model.js';
export type { QuantLayerInfo, QuantLoadOptions } from './quant/model.js';
export { quantizeLayer, dequantizeLayer } from './quant/quantize.js';
export { qmatmul } from './quant/qmatmul.js';
export type { QmatmulOptions } from './quant/qmatmul.js';
export type { QuantizeOptions, LayerFormatOptions } from './quant/options.js';
export type { QuantStats, QuantLayerStats, QuantErrorStats } from './quant/calibrate.js';
export { QUANT_FORMATS, QUANT_ACTIVATIONS, INT4_GROUP_SIZES, MAX_W8A8_INT8_INPUTS } from './quant/format.js';
export type { QuantLayer, QuantFormat, QuantActivations } from './quant/format.js';
export { VERSION } from './version.js';
