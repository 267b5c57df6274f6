"""One file per schema revision, each naming its down_revision; copy the newest to start one."""
