"""Every model of the comparison behind one interface: the Keras MLP and its engines, the baselines."""
