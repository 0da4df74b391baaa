"""Training code for matchms-neims (imports matchms_neims; matchms_neims never imports this package)."""
