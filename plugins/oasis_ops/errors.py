"""The one exception type for input a user can fix: bad conf, bad files, bad model set-up."""


class OasisInputError(ValueError):
    """Raised for input a user can fix; the message names the field or file, the problem and the fix.

    Tasks turn it into ``AirflowFailException``: retrying cannot mend bad input.
    """
