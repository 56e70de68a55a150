"""Tables in, arrays out: sources, validation, preprocessing, splits and what prepare hands on."""
