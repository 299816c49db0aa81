"""The survey's web pages: respondents answer at a link in their phone's browser (handlers),
from the templates shipped beside this file."""
