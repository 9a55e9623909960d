"""What comes back: signed tokens, hits (opens, clicks, answers), their classification,
bounces, events."""
