"""The pipeline's stages, one module each: a thin main() that reads, computes, writes and logs."""
