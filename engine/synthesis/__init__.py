"""Class-conditional synthesis of labelled patches: data sets, trainers, the
sampling front end (`synthesize`) and its evaluation (FID/KID, CAS, augmentation gain)."""
