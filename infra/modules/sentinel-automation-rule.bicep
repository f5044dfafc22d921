// Sentinel wiring, part 2: an automation rule on the Sentinel workspace that runs the
// playbook for every new incident (the function decides what is ours: incidents that name
// no synthetic-data resource are recorded as ignored). Narrow it with conditions (e.g. on
// analytics rule ids) if the workspace raises many unrelated incidents.
param workspaceName string
param playbookId string
@description('Automation rule id (a GUID).')
param ruleName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource forwardIncidents 'Microsoft.SecurityInsights/automationRules@2023-02-01' = {
  name: ruleName
  scope: workspace
  properties: {
    displayName: 'Synthetic leak responder: forward new incidents'
    order: 100
    triggeringLogic: {
      isEnabled: true
      triggersOn: 'Incidents'
      triggersWhen: 'Created'
      conditions: []
    }
    actions: [
      {
        order: 1
        actionType: 'RunPlaybook'
        actionConfiguration: {
          logicAppResourceId: playbookId
          tenantId: tenant().tenantId
        }
      }
    ]
  }
}
