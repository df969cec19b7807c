"""What latentlab writes from scratch: PCA, t-SNE, a NumPy network, image-quality measures."""
