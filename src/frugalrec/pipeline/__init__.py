"""Online pipeline: candidate retrieval, re-ranking, explanations."""
