"""The guide's ``SillyWeb.Counter``, imported by examples/htdocs/counter.rpy."""


class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1

    def getValue(self):
        return self.value
