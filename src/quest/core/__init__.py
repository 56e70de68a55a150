"""The ground every layer of quest may use: paths, errors and the command runner, files, timing, processes,
progress, interrupts, the host, compatibility shims, the cluster and the catalogue of packaged tables."""
