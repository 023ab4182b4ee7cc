"""`harness merge`: fold adapters into the base, export, verify, upload."""
