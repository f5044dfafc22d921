// Sentinel wiring, part 1: a Logic App playbook with the Microsoft Sentinel incident trigger
// that POSTs the trigger body (the incident, with its entities) to the function's HTTP
// route for Sentinel (/api/alerts by default). The function key comes from listKeys on that one function (a key
// valid for no other function) and reaches the workflow as a SecureString parameter, which
// ARM never returns on GET; run history hides the action's inputs (secureData).
// The playbook's own identity needs no Sentinel role: it only forwards; the function writes
// the comment and labels with the responder identity.
param name string
param location string
param tags object
param functionAppName string
@description('Name of the HTTP-triggered function the playbook calls.')
param functionName string
@description('https URL of that function\'s route.')
param functionUrl string
@description('Object id of the "Azure Security Insights" service principal; empty = no role for it.')
param sentinelAutomationPrincipalId string = ''

// Microsoft Sentinel Automation Contributor (built-in): f4c81013-99ee-4d62-a7ee-b3f1f648599a
// Sentinel's service account needs it "on the resource group where the playbook resides"
// (MicrosoftDocs azure-docs articles/sentinel/includes/playbooks-service-account-permissions.md):
// granted on this module's scope, the app's resource group, which holds nothing else Sentinel runs.
var sentinelAutomationContributor = 'f4c81013-99ee-4d62-a7ee-b3f1f648599a'

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource sentinelFunction 'Microsoft.Web/sites/functions@2024-04-01' existing = {
  parent: site
  name: functionName
}

resource sentinelConnection 'Microsoft.Web/connections@2016-06-01' = {
  name: 'azuresentinel-${name}'
  location: location
  tags: tags
  kind: 'V1'
  properties: {
    displayName: 'Microsoft Sentinel (managed identity of ${name})'
    api: {
      id: subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azuresentinel')
    }
    parameterValueType: 'Alternative'
  }
}

resource playbook 'Microsoft.Logic/workflows@2019-05-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {
        '$connections': {
          defaultValue: {}
          type: 'Object'
        }
        responderUrl: {
          defaultValue: ''
          type: 'String'
        }
        functionKey: {
          defaultValue: ''
          type: 'SecureString'
        }
      }
      triggers: {
        Microsoft_Sentinel_incident: {
          type: 'ApiConnectionWebhook'
          inputs: {
            body: {
              callback_url: '@{listCallbackUrl()}'
            }
            host: {
              connection: {
                name: '@parameters(\'$connections\')[\'azuresentinel\'][\'connectionId\']'
              }
            }
            path: '/incident-creation'
          }
        }
      }
      actions: {
        Post_incident_to_responder: {
          type: 'Http'
          runAfter: {}
          inputs: {
            method: 'POST'
            uri: '@parameters(\'responderUrl\')'
            headers: {
              'Content-Type': 'application/json'
              'x-functions-key': '@parameters(\'functionKey\')'
            }
            body: '@triggerBody()'
          }
          runtimeConfiguration: {
            secureData: {
              properties: [
                'inputs'
              ]
            }
          }
        }
      }
      outputs: {}
    }
    parameters: {
      '$connections': {
        value: {
          azuresentinel: {
            connectionId: sentinelConnection.id
            connectionName: sentinelConnection.name
            id: subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'azuresentinel')
            connectionProperties: {
              authentication: {
                type: 'ManagedServiceIdentity'
              }
            }
          }
        }
      }
      responderUrl: {
        value: functionUrl
      }
      functionKey: {
        value: listKeys(sentinelFunction.id, '2024-04-01').default
      }
    }
  }
}

resource automationMayRun 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(sentinelAutomationPrincipalId)) {
  name: guid(resourceGroup().id, sentinelAutomationPrincipalId, sentinelAutomationContributor)
  properties: {
    principalId: sentinelAutomationPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sentinelAutomationContributor)
  }
}

output id string = playbook.id
output name string = playbook.name
