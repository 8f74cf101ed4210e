"""The packet contract as a pure model: classify and rewrite a frame, explain it step by step,
replay a capture. Used by validate (expectations), explain, test and the differential suite."""
