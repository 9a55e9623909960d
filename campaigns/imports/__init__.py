"""Data coming in: CSV imports of accounts and contacts, and the sample files."""
