"""Training data: molecule-level splits, the HDF5 cache, the lazy dataset, samplers and the DataModule, molecule
lists without spectra, augmentation and decoys."""
