"""What the marketer writes besides journeys: templates on disk, rendered per recipient."""
