# A resource script that fails: the answer is the server's usual 500 page.
raise RuntimeError("this script is broken on purpose")
