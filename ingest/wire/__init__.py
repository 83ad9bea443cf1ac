"""Generated protobuf modules for the wire formats in proto/ (`make proto`)."""
