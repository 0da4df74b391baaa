"""Training code for matchms-neims, installed as ``matchms_neims_training`` (it imports matchms_neims; matchms_neims
never imports it).

Its parts: ``data`` (splits, the HDF5 cache, the dataset, samplers and DataModule, molecule lists, augmentation,
decoys, the featurizer of a config), ``modules`` (the LightningModules: baseline, teacher, pretraining, student),
``distillation`` (soft labels, transfer set, losses, GradNorm, expert groups, schedules), ``running`` (runner,
callbacks, optimisers, refit, validation) and ``commands`` (the ``matchms-neims train ...`` commands); ``config``
holds the YAML configs' dataclasses, ``configs/`` the configs.
"""
