"""The LightningModules: the NEIMS baseline, the graph teacher, bond-masking pretraining and the MoE student."""
