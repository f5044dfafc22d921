"""Azure Functions entry point: create the app and register the trigger blueprints. Nothing else."""

import azure.functions as func

from responders.triggers.eventgrid import bp as eventgrid_bp
from responders.triggers.http import bp as http_bp
from responders.triggers.timer import bp as timer_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(eventgrid_bp)
app.register_functions(http_bp)
app.register_functions(timer_bp)
