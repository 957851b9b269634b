"""Training of the codec's transforms: data, objective and the resumable loop."""
