"""The uniform inference runtime: any registered ONNX model behind the Open Inference Protocol v2
(inference.GRPCInferenceService), one process per replica."""
