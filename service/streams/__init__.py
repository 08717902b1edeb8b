"""Camera streams: sources, face tracking across frames, which crops to recognise, events (issue 21)."""
