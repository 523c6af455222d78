import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export { query } from './model';

/**
 * Call the trainorch REST API: `{baseUrl}trainorch/api/{endpoint}`.
 *
 * ServerConnection adds the token or the XSRF header, and the base URL keeps a
 * JupyterHub prefix (`/user/NAME/`).  A non-2xx answer raises with the server's
 * message.
 */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'trainorch', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error message
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, (data && data.message) || String(data));
  }
  return data as T;
}
