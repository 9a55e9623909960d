"""The engine: enrol, claim under fenced leases, run steps in send batches, delivery controls."""
