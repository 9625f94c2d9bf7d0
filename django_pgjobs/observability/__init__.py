"""What operators see: the queue at a glance for the CLI, the dashboard's figures for the admin."""
