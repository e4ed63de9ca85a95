"""Data: degradations, the paired training set (original + degraded image) and its validation."""
