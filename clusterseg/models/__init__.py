"""clusterseg models: clustering-attention primitives (layers/) and their OpenMMLab compositions."""
