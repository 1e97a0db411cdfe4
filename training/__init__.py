"""The training side of the workbench: loops and engine adapters that write run directories."""
