"""PHD2 event-server and legacy socket-server protocols, sans-IO."""
