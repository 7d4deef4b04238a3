"""Recording: the proxy, the tee, the in-process handle, local and SSH peers, the record command."""
