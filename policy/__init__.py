"""The mlops CrossGuard policy pack; `checks` holds the pure check functions `plan` reuses."""
