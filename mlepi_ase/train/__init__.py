"""Training of the HedgeNet models (one module per model: :mod:`mlepi_ase.train.phonon`)."""
