"""plugin._qt."""
