"""Qt parts of the plugin: the dock widget, its stack controls, the drift plot, dialogs."""
